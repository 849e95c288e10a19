// Package httpapi serves the JSON APIs: the device API phones call and the
// admin API the bank's operators call on an internal listener.
package httpapi

// Package policy turns a onepush policy file into compiled rules that decide which requests
// to an unchanged legacy bank must wait for a phone approval, and what the phone is shown.
package policy

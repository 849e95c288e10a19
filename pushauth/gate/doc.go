// Package gate is what a browser meets: it holds the requests a policy rule
// matches until the phone decides, and serves the waiting and enrolment pages.
//
// It uses only the pushauth core's exported API, as plain net/http.
package gate

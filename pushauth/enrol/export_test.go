package enrol

// What the external tests (package enrol_test) reach inside the binder.

var CheckActivationCode = (*Binder).checkActivationCode

package httpapi

import "net/http"

// routeMux is an http.ServeMux that remembers the patterns it was given:
// net/http does not list them, and the API descriptions are checked
// against what is registered here rather than against a list kept by hand.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern, as http.ServeMux.Handle does.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

// HandleFunc registers h for pattern, as http.ServeMux.HandleFunc does.
func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

// Patterns returns the registered patterns in order.
func (m *routeMux) Patterns() []string { return append([]string(nil), m.patterns...) }

package pushauth

import "sync"

// waiters is the in-process registry of requests waiting on a challenge,
// by challenge ID. Several may wait on one challenge (a held request and
// the long-polls of its waiting page). Held requests and polls are counted
// apart, each against its own bound.
type waiters struct {
	mu       sync.Mutex
	m        map[string][]*waiter
	n        int
	max      int
	polls    int
	maxPolls int
}

// waiter's channel has capacity one so a wake that arrives while the
// waiter is re-reading the store is kept for its next loop. A wake carries
// the challenge's final record when the store delivered it, nil otherwise.
type waiter struct {
	ch   chan *Challenge
	poll bool
}

func newWaiters(max, maxPolls int) *waiters {
	return &waiters{m: make(map[string][]*waiter), max: max, maxPolls: maxPolls}
}

// setBounds changes the bounds; requests over a lowered bound stay until
// they end.
func (ws *waiters) setBounds(max, maxPolls int) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.max, ws.maxPolls = max, maxPolls
}

// add registers a held request.
func (ws *waiters) add(id string) (*waiter, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.n >= ws.max {
		return nil, ErrTooManyHeld
	}
	w := &waiter{ch: make(chan *Challenge, 1)}
	ws.m[id] = append(ws.m[id], w)
	ws.n++
	return w, nil
}

// addPoll registers a long poll of a waiting page.
func (ws *waiters) addPoll(id string) (*waiter, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.polls >= ws.maxPolls {
		return nil, ErrTooManyPolls
	}
	w := &waiter{ch: make(chan *Challenge, 1), poll: true}
	ws.m[id] = append(ws.m[id], w)
	ws.polls++
	return w, nil
}

func (w *waiter) wake(final *Challenge) {
	select {
	case w.ch <- final:
	default:
	}
}

func (ws *waiters) remove(id string, w *waiter) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	list := ws.m[id]
	for i, x := range list {
		if x == w {
			list = append(list[:i], list[i+1:]...)
			if w.poll {
				ws.polls--
			} else {
				ws.n--
			}
			break
		}
	}
	if len(list) == 0 {
		delete(ws.m, id)
	} else {
		ws.m[id] = list
	}
}

// wake wakes every waiter of challenge id, each with its own copy of the
// final record, if there is one.
func (ws *waiters) wake(id string, final *Challenge) {
	if final != nil && (final.ID != id || !final.Status.Final()) {
		final = nil // not a record to trust for a release: re-read
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, w := range ws.m[id] {
		if final == nil {
			w.wake(nil)
			continue
		}
		cp := *final
		w.wake(&cp)
	}
}

// ids lists the challenges waited on now.
func (ws *waiters) ids() []string {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	out := make([]string, 0, len(ws.m))
	for id := range ws.m {
		out = append(out, id)
	}
	return out
}

package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The writer is the only goroutine that writes to the file. It commits
// everything queued in one transaction (group commit), so concurrent
// writers share one fsync, and a lone write is committed at once.
//
// Writes are queued in order in a slice, not a channel: a batched write
// wakes the writer only when it is the first of a batch (to arm the
// Linger timer), so the path of a held request never pays for waking a
// goroutine per audit event or token ID. A write someone waits for wakes
// it at once, and its commit carries every write queued before it.
//
// bbolt's own DB.Batch coalesces too, but only by waiting MaxBatchDelay
// for company, which a lone binding would pay in latency; and it has no
// writes that nobody waits for.

const (
	// queueSize bounds the writes waiting for the writer.
	queueSize = 16384
	// queueWait is how long a write waits for room in a full queue (the
	// disk is not keeping up) before it fails.
	queueWait = 5 * time.Second
)

var (
	errClosed    = errors.New("embedded store: closed")
	errQueueFull = errors.New("embedded store: write queue is full (the disk is not keeping up)")
)

// writeOp is one write. apply runs inside the writer's transaction and
// may run again in another one when a write batched with it fails, so it
// must depend only on the transaction. A nil apply is a barrier: it
// returns once everything queued before it is committed.
type writeOp struct {
	apply func(tx *bolt.Tx) error
	done  chan error // nil: nobody waits (batched)
}

type writer struct {
	db     *bolt.DB
	linger time.Duration
	log    *slog.Logger
	// check runs before each commit; an error fails the whole batch.
	check func() error
	// durable runs after each commit that carried a write someone waits
	// for (a binding, a revocation, a lock, an activation code's use),
	// with the generation the file reached, before they are answered.
	durable func(generation uint64)

	mu      sync.Mutex
	pending []writeOp
	waited  bool          // pending holds a write someone waits for
	taken   chan struct{} // closed when the writer takes pending
	closed  bool
	wake    chan struct{} // capacity 1
	stopped chan struct{}
	commits atomic.Int64
}

func newWriter(db *bolt.DB, linger time.Duration, log *slog.Logger, check func() error, durable func(generation uint64)) *writer {
	w := &writer{db: db, linger: linger, log: log, check: check, durable: durable, taken: make(chan struct{}), wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go w.run()
	return w
}

func (w *writer) enqueue(ctx context.Context, op writeOp) error {
	var timeout <-chan time.Time
	w.mu.Lock()
	for len(w.pending) >= queueSize && !w.closed {
		taken := w.taken
		w.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(queueWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-taken:
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return errQueueFull
		}
		w.mu.Lock()
	}
	if w.closed {
		w.mu.Unlock()
		return errClosed
	}
	w.pending = append(w.pending, op)
	wake := len(w.pending) == 1 || (op.done != nil && !w.waited)
	w.waited = w.waited || op.done != nil
	w.mu.Unlock()
	if wake {
		w.signal()
	}
	return nil
}

func (w *writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// do queues apply and waits for its commit.
func (w *writer) do(ctx context.Context, apply func(tx *bolt.Tx) error) error {
	done, err := w.submit(ctx, apply)
	if err != nil {
		return err
	}
	return wait(ctx, done)
}

// submit queues apply; the channel reports its commit. A caller that must
// order its writes queues them under its own lock and waits outside it.
func (w *writer) submit(ctx context.Context, apply func(tx *bolt.Tx) error) (<-chan error, error) {
	done := make(chan error, 1)
	if err := w.enqueue(ctx, writeOp{apply: apply, done: done}); err != nil {
		return nil, err
	}
	return done, nil
}

func wait(ctx context.Context, done <-chan error) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("embedded store: waiting for a commit: %w", ctx.Err())
	}
}

// later queues apply for the next commit without waiting for it.
func (w *writer) later(apply func(tx *bolt.Tx) error) error {
	return w.enqueue(context.Background(), writeOp{apply: apply})
}

// flush waits until every write queued before it is committed.
func (w *writer) flush(ctx context.Context) error { return w.do(ctx, nil) }

// close commits what is queued and stops the writer.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.signal()
	<-w.stopped
}

func (w *writer) run() {
	defer close(w.stopped)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		<-w.wake
		w.mu.Lock()
		hurry := w.waited || w.closed
		w.mu.Unlock()
		if !hurry {
			// Only batched writes: give them company for up to Linger,
			// unless a write someone waits for comes first.
			linger.Reset(w.linger)
			select {
			case <-w.wake:
			case <-linger.C:
			}
			linger.Stop()
		}
		w.mu.Lock()
		batch, closed := w.pending, w.closed
		w.pending, w.waited = nil, false
		close(w.taken)
		w.taken = make(chan struct{})
		w.mu.Unlock()
		if len(batch) > 0 {
			w.commit(batch)
		}
		if closed {
			return
		}
	}
}

// commit applies batch in one transaction. When one write fails, it gets
// its own verdict in a transaction of its own and the rest are committed
// without it.
func (w *writer) commit(batch []writeOp) {
	if !slices.ContainsFunc(batch, func(op writeOp) bool { return op.apply != nil }) {
		w.finish(batch, nil)
		return
	}
	if err := w.check(); err != nil {
		w.finish(batch, err)
		return
	}
	for len(batch) > 0 {
		failed := -1
		var gen uint64
		err := w.db.Update(func(tx *bolt.Tx) error {
			for i, op := range batch {
				if op.apply == nil {
					continue
				}
				if err := op.apply(tx); err != nil {
					failed = i
					return err
				}
			}
			err := bumpGeneration(tx)
			gen = generationIn(tx)
			return err
		})
		if failed < 0 {
			if err == nil {
				w.commits.Add(1)
				w.committed(batch, gen)
			}
			w.finish(batch, err)
			return
		}
		op := batch[failed]
		err = w.db.Update(func(tx *bolt.Tx) error {
			if err := op.apply(tx); err != nil {
				return err
			}
			err := bumpGeneration(tx)
			gen = generationIn(tx)
			return err
		})
		if err == nil {
			w.commits.Add(1)
			w.committed([]writeOp{op}, gen)
		}
		w.finish([]writeOp{op}, err)
		batch = slices.Delete(slices.Clone(batch), failed, failed+1)
	}
}

// committed runs the durable hook when ops held a write someone waits
// for: batched writes alone (the held-request path) cost no more than
// their commit.
func (w *writer) committed(ops []writeOp, generation uint64) {
	if w.durable != nil && slices.ContainsFunc(ops, func(op writeOp) bool { return op.apply != nil && op.done != nil }) {
		w.durable(generation)
	}
}

func (w *writer) finish(ops []writeOp, err error) {
	lost := 0
	for _, op := range ops {
		switch {
		case op.done != nil:
			op.done <- err
		case err != nil:
			lost++
		}
	}
	if lost > 0 {
		w.log.Error("embedded store: batched writes were not committed (audit events of challenges, used device-token markers, learned sessions)", "count", lost, "error", err)
	}
}

var metaGeneration = []byte("generation")

// bumpGeneration counts commits in the file itself, so a copy put back in
// its place is seen to be older than what the gateway last used.
func bumpGeneration(tx *bolt.Tx) error {
	return tx.Bucket(bucketMeta).Put(metaGeneration, binary.BigEndian.AppendUint64(nil, generationIn(tx)+1))
}

// generationIn is the file's generation as tx sees it.
func generationIn(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(metaGeneration); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

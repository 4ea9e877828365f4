// Command rwmutex puts etcd's own Go recipe.RWMutex (contrib/recipes) on a line protocol, so that
// wirelock's tests can run a reference reader or writer next to EtcdRWLock against the same etcd.
//
//	rwmutex -endpoints 127.0.0.1:2379 -name <lock name> [-ttl 5]
//
// It prints "ready <lease hex>" once its session exists, then reads one command per line on stdin
// and answers each with one line on stdout:
//
//	rlock     rlocked <key> <createRevision>, once RLock returns (error <msg> if it fails)
//	lock      locked <key> <createRevision>, once Lock returns (error <msg> if it fails)
//	runlock   ok | error <msg>
//	unlock    ok | error <msg>
//	close     closed, after the session's lease is revoked (its key goes with it); then it exits 0
//
// The recipe keeps one key per RWMutex, so the program holds or waits for one lock at a time: rlock
// and lock answer "error busy" meanwhile. RLock and Lock take no context and answer only once held,
// so they run in their own goroutine and the other commands keep working while they wait. End of
// input counts as close, so a program never outlives its test.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	recipe "go.etcd.io/etcd/contrib/recipes"
)

// rpcTimeout bounds every request but the lock's wait, so a stuck server shows up as an error line.
const rpcTimeout = 5 * time.Second

// say writes one line. Only the main loop prints, and os.Stdout is unbuffered: the test reads each
// line as soon as it is written.
func say(format string, args ...interface{}) {
	os.Stdout.WriteString(strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ") + "\n")
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated etcd endpoints")
	name := flag.String("name", "", "the lock's name: keys go under <name>/read/ and <name>/write/")
	ttl := flag.Int("ttl", 5, "session TTL in seconds")
	flag.Parse()
	if *name == "" {
		fmt.Fprintln(os.Stderr, "rwmutex: -name is required")
		os.Exit(2)
	}

	client, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: rpcTimeout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rwmutex: connect:", err)
		os.Exit(1)
	}
	// The lease is granted here rather than by NewSession, whose Grant has no deadline: an unreachable
	// etcd then ends the program with an error instead of leaving the test waiting for "ready".
	var lease *clientv3.LeaseGrantResponse
	err = withTimeout(func(ctx context.Context) (err error) {
		lease, err = client.Grant(ctx, int64(*ttl))
		return err
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rwmutex: grant lease:", err)
		os.Exit(1)
	}
	session, err := concurrency.NewSession(client, concurrency.WithLease(lease.ID), concurrency.WithTTL(*ttl))
	if err != nil {
		fmt.Fprintln(os.Stderr, "rwmutex: session:", err)
		os.Exit(1)
	}
	rw := recipe.NewRWMutex(session, *name)
	say("ready %x", session.Lease())

	commands := make(chan string)
	go func() {
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			commands <- scanner.Text()
		}
		close(commands)
	}()

	// mode is the lock pending or held ("rlock" or "lock"), "" when neither; held says which of the two.
	mode, held := "", false
	locked := make(chan error)
	unlocks := map[string]string{"runlock": "rlock", "unlock": "lock"}

	for {
		select {
		case err := <-locked:
			if err != nil {
				mode = ""
				say("error %v", err)
			} else {
				held = true
				say("%sed %s", mode, ownKey(client, session, *name)) // rlocked / locked
			}

		case line, ok := <-commands:
			if !ok {
				line = "close"
			}
			switch verb := strings.TrimSpace(line); verb {
			case "rlock", "lock":
				if mode != "" {
					say("error busy")
					continue
				}
				mode = verb
				if verb == "rlock" {
					go func() { locked <- rw.RLock() }()
				} else {
					go func() { locked <- rw.Lock() }()
				}
			case "runlock", "unlock":
				if !held || mode != unlocks[verb] {
					say("error not holding %s", unlocks[verb])
					continue
				}
				mode, held = "", false
				// RUnlock and Unlock are the same plain delete of the key (no revision check).
				if verb == "runlock" {
					reply(rw.RUnlock())
				} else {
					reply(rw.Unlock())
				}
			case "close":
				// Close revokes the lease: the key, held or waiting, goes with it.
				if err := session.Close(); err != nil {
					say("error %v", err)
					os.Exit(1)
				}
				client.Close()
				say("closed")
				os.Exit(0)
			default:
				say("error unknown command %q", line)
			}
		}
	}
}

// ownKey finds the key the recipe just wrote (it does not export it): the one key under the lock's
// name on this session's lease, with its create revision.
func ownKey(client *clientv3.Client, session *concurrency.Session, name string) string {
	var found string
	err := withTimeout(func(ctx context.Context) error {
		resp, err := client.Get(ctx, name+"/", clientv3.WithPrefix())
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			if clientv3.LeaseID(kv.Lease) == session.Lease() {
				found = fmt.Sprintf("%s %d", kv.Key, kv.CreateRevision)
			}
		}
		return nil
	})
	if err != nil {
		return "? ? (" + err.Error() + ")"
	}
	return found
}

func withTimeout(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	return f(ctx)
}

func reply(err error) {
	if err != nil {
		say("error %v", err)
	} else {
		say("ok")
	}
}

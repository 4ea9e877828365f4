// Command election puts etcd's own Go concurrency.Election on a line protocol, so that wirelock's
// tests can run a reference candidate next to EtcdElection against the same etcd.
//
//	election -endpoints 127.0.0.1:2379 -name <election> [-ttl 5]
//
// It prints "ready <lease hex>" once its session exists, then reads one command per line on stdin
// and answers each with one line on stdout:
//
//	campaign <value>   leader <key> <createRevision>, once it leads (error <msg> if it fails)
//	cancel             ok; the pending campaign then answers "error context canceled"
//	proclaim <value>   ok | error <msg>
//	resign             ok | error <msg>
//	leader             leader <key> <value> | none
//	observe            ok; then "observed <key> <value>" for every leader value Observe reports
//	close              closed, after the session's lease is revoked; then it exits 0
//
// A campaign answers when it is won, so it runs in its own goroutine and the other commands keep
// working while it waits; campaign, proclaim and resign answer "error campaign pending" meanwhile,
// since Campaign updates the Election as it goes. End of input counts as close, so a candidate never
// outlives its test.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

// rpcTimeout bounds every request but the campaign's wait, so a stuck server shows up as an error line.
const rpcTimeout = 5 * time.Second

// out serializes lines from the command loop and the observers. os.Stdout is unbuffered: each line is
// one write, so the test reads it as soon as it is printed.
var out sync.Mutex

func say(format string, args ...interface{}) {
	line := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	out.Lock()
	defer out.Unlock()
	os.Stdout.WriteString(line + "\n")
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated etcd endpoints")
	name := flag.String("name", "", "election name (the key prefix, without the trailing /)")
	ttl := flag.Int("ttl", 5, "session TTL in seconds")
	flag.Parse()
	if *name == "" {
		fmt.Fprintln(os.Stderr, "election: -name is required")
		os.Exit(2)
	}

	client, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: rpcTimeout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "election: connect:", err)
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
		fmt.Fprintln(os.Stderr, "election: grant lease:", err)
		os.Exit(1)
	}
	session, err := concurrency.NewSession(client, concurrency.WithLease(lease.ID), concurrency.WithTTL(*ttl))
	if err != nil {
		fmt.Fprintln(os.Stderr, "election: session:", err)
		os.Exit(1)
	}
	election := concurrency.NewElection(session, *name)
	say("ready %x", session.Lease())

	// Commands arrive on a channel so the loop below can also take the campaign's result: the loop is
	// the only goroutine that touches the Election while no campaign is pending.
	commands := make(chan string)
	go func() {
		scanner := bufio.NewScanner(os.Stdin)
		for scanner.Scan() {
			commands <- scanner.Text()
		}
		close(commands)
	}()

	observing, stopObserving := context.WithCancel(context.Background())
	var cancelCampaign context.CancelFunc // not nil while a campaign is pending
	campaigned := make(chan error)

	for {
		select {
		case err := <-campaigned:
			cancelCampaign()
			cancelCampaign = nil
			if err != nil {
				say("error %v", err)
			} else {
				say("leader %s %d", election.Key(), election.Rev())
			}

		case line, ok := <-commands:
			if !ok {
				line = "close"
			}
			verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
			if cancelCampaign != nil && (verb == "campaign" || verb == "proclaim" || verb == "resign") {
				say("error campaign pending")
				continue
			}
			switch verb {
			case "campaign":
				var ctx context.Context
				ctx, cancelCampaign = context.WithCancel(context.Background())
				go func() { campaigned <- election.Campaign(ctx, arg) }()
			case "cancel":
				if cancelCampaign == nil {
					say("error no campaign pending")
					continue
				}
				// "ok" goes out before the campaign can answer "error context canceled".
				say("ok")
				cancelCampaign()
			case "proclaim":
				reply(withTimeout(func(ctx context.Context) error { return election.Proclaim(ctx, arg) }))
			case "resign":
				reply(withTimeout(election.Resign))
			case "leader":
				withTimeout(func(ctx context.Context) error {
					resp, err := election.Leader(ctx)
					switch {
					case err == concurrency.ErrElectionNoLeader:
						say("none")
					case err != nil:
						say("error %v", err)
					default:
						say("leader %s %s", resp.Kvs[0].Key, resp.Kvs[0].Value)
					}
					return nil
				})
			case "observe":
				leaders := election.Observe(observing)
				say("ok")
				go func() {
					for resp := range leaders {
						say("observed %s %s", resp.Kvs[0].Key, resp.Kvs[0].Value)
					}
				}()
			case "close":
				stopObserving()
				if cancelCampaign != nil {
					cancelCampaign()
				}
				// Close revokes the lease: every key of this candidate goes with it.
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

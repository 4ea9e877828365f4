// Command mutex runs etcd's own Go concurrency.Mutex through the bench's two lock scenarios, so that
// `npm run bench` can put wirelock's EtcdLocker next to the client it is key-compatible with.
//
//	mutex -endpoints 127.0.0.1:2379
//
// It reads one command per line on stdin and answers each with one JSON line on stdout:
//
//	uncontended <seconds>          {"cyclesPerSec": n}: Lock then Unlock on a new key each cycle,
//	                               one client and one session (as EtcdLocker keeps one session)
//	contended <workers> <seconds>  the bench's contended loop: each worker its own client and session,
//	                               think 0-2 ms, Lock, hold 1 ms, Unlock, on one key
//
// End of input ends it. Keys live under /wirelock-bench-go/.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

var endpoints = flag.String("endpoints", "127.0.0.1:2379", "comma-separated etcd endpoints")
var runs int64

func connect() (*clientv3.Client, *concurrency.Session) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		fail(err)
	}
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		fail(err)
	}
	return cli, s
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mutex:", err)
	os.Exit(1)
}

func uncontended(seconds float64) map[string]interface{} {
	cli, s := connect()
	defer cli.Close()
	defer s.Close()
	ctx := context.Background()
	run := atomic.AddInt64(&runs, 1)
	start := time.Now()
	end := start.Add(time.Duration(seconds * float64(time.Second)))
	n := 0
	for time.Now().Before(end) {
		m := concurrency.NewMutex(s, fmt.Sprintf("/wirelock-bench-go/u%d-%d", run, n))
		if err := m.Lock(ctx); err != nil {
			fail(err)
		}
		if err := m.Unlock(ctx); err != nil {
			fail(err)
		}
		n++
	}
	return map[string]interface{}{"cyclesPerSec": float64(n) / time.Since(start).Seconds()}
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

func contended(workers int, seconds float64) map[string]interface{} {
	key := fmt.Sprintf("/wirelock-bench-go/c%d", atomic.AddInt64(&runs, 1))
	type worker struct {
		cli *clientv3.Client
		s   *concurrency.Session
	}
	ws := make([]worker, workers)
	for i := range ws {
		ws[i].cli, ws[i].s = connect()
	}
	var mu sync.Mutex
	var waits, gaps, holds []float64
	counts := make([]int, workers)
	var inside, violations int64
	var lastRelease int64 = -1 // ns since start
	start := time.Now()
	end := start.Add(time.Duration(seconds * float64(time.Second)))
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx := context.Background()
			m := concurrency.NewMutex(ws[i].s, key)
			for time.Now().Before(end) {
				time.Sleep(time.Duration(rand.Float64() * 2 * float64(time.Millisecond)))
				asked := time.Now()
				if err := m.Lock(ctx); err != nil {
					fail(err)
				}
				granted := time.Now()
				if atomic.AddInt64(&inside, 1) > 1 {
					atomic.AddInt64(&violations, 1)
				}
				mu.Lock()
				waits = append(waits, ms(granted.Sub(asked)))
				if lr := atomic.LoadInt64(&lastRelease); lr >= 0 && lr <= int64(granted.Sub(start)) {
					gaps = append(gaps, ms(granted.Sub(start))-float64(lr)/1e6)
				}
				mu.Unlock()
				time.Sleep(time.Millisecond)
				held := ms(time.Since(granted))
				mu.Lock()
				holds = append(holds, held)
				mu.Unlock()
				atomic.AddInt64(&inside, -1)
				counts[i]++
				atomic.StoreInt64(&lastRelease, int64(time.Since(start)))
				if err := m.Unlock(ctx); err != nil {
					fail(err)
				}
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	for _, w := range ws {
		w.s.Close()
		w.cli.Close()
	}
	sort.Float64s(waits)
	sort.Float64s(gaps)
	sort.Float64s(holds)
	total, lo, hi := 0, counts[0], counts[0]
	for _, c := range counts {
		total += c
		if c < lo {
			lo = c
		}
		if c > hi {
			hi = c
		}
	}
	return map[string]interface{}{
		"acqPerSec": float64(total) / elapsed, "waitP50": quantile(waits, 0.5), "waitP99": quantile(waits, 0.99),
		"waitMax": quantile(waits, 1), "gapP50": quantile(gaps, 0.5), "holdP50": quantile(holds, 0.5), "minPerWorker": lo, "maxPerWorker": hi,
		"violations": violations,
	}
}

func main() {
	flag.Parse()
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var cmd string
		var a, b float64
		fields := strings.Fields(in.Text())
		if len(fields) == 0 {
			continue
		}
		cmd = fields[0]
		if len(fields) > 1 {
			fmt.Sscan(fields[1], &a)
		}
		if len(fields) > 2 {
			fmt.Sscan(fields[2], &b)
		}
		switch cmd {
		case "uncontended":
			out.Encode(uncontended(a))
		case "contended":
			out.Encode(contended(int(a), b))
		default:
			out.Encode(map[string]string{"error": "unknown command " + cmd})
		}
	}
}

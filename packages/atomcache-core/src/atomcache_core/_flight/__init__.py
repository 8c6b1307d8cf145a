"""Single flight: one computation per cold key, in the process and across the fleet.

How a call of `Cache.get_or_set` proceeds (see DESIGN.md, "Single flight"):

1. A call for a key that this process is already filling joins that fill (one shared
   task per key, shielded so one caller's cancellation does not stop the others).
2. Otherwise it reads the entry: fresh -> returned (possibly with an early refresh,
   XFetch); expired but inside `stale_ttl` -> returned while one background refresh
   runs; else the process starts a fill.
3. A fill takes the lock (`SET NX PX`, random token). The leader re-reads the key
   (another leader may just have finished), computes, and stores with a fenced write
   that succeeds only while it still holds the lock, releasing it in the same step;
   then it publishes "stored". While it computes, it extends the lock and publishes
   a "computing" heartbeat every `heartbeat_interval`.
4. A process that does not get the lock subscribes to the key's channel first, then
   re-reads and retries the lock (so neither a "stored" nor a "failed" can slip by),
   then waits. "stored" -> re-read. "failed" -> re-read and try the lock: one of the
   waiting processes becomes the next leader. "computing" -> keep waiting without
   any command. Silence for `recheck_interval` -> re-read and try the lock: this
   covers lost notifications and crashed leaders (their lock expires).
5. Every wait ends by `wait_timeout`: then the caller computes without storing
   (`on_wait_timeout="compute"`, the default) or gets `LockTimeoutError` ("raise").

In the same process, callers that joined a failing fill get the factory's exception.

A factory may return `Uncacheable(value)`: its own caller gets `value`, nothing is
stored, and every other caller (joined in-process, or waiting in another process, woken
by a "skipped" event) computes its own value without waiting. HTTP adapters use this for
responses that must not be shared (errors, `Set-Cookie`, streaming, oversized bodies).

One idea per module; each imports only those listed before it:

- `options`: what a call asks for (`FlightOptions`, `WaitPolicy`) and gets (`Outcome`,
  `Uncacheable`);
- `context`: the narrow view single flight is given instead of the `Cache`
  (`FlightContext`: keys, serializer, telemetry, decoding; `FlightParts`: its loop's
  backends);
- `factory`: running a factory (timed, refusing a factory that waits for its own key),
  and computing without storing;
- `reads`: one storage read per key shared among concurrent callers, the memo of
  decodings of immutable values, and each caller's own decoding of a shared value;
- `waiting`: the waiter's reaction to each notification, as a table, and the loop that
  follows it;
- `lease`: the leader's side, from the lock to the fenced write (or the release) and
  the notification;
- `refresh`: background refreshes, early (XFetch) and stale-while-revalidate;
- `coordinator`: `SingleFlight`, which decides per call between a hit, joining a fill
  under way in this process, and a fill of its own.

Why these boundaries: the options and the context are plain data every other module
reads, so they come first (`context` only names `FlightOptions`). Decoding is kept with the
reads rather than in the coordinator because both the memo and the per-caller copy
turn on one option (`reuse_decoded`). The leader's computation (`Lease.compute`) lives
with the lease, not in the coordinator, so that background refreshes, which lead too,
need only the lease: `lease` and `refresh` see the coordinator through `LeaseIssuer`, a
protocol of the five things a lease reads of it, and never import it. Releasing a lock
in the background stays a method of the coordinator, which owns those tasks.
"""

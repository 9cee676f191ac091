"""redis-py against a duokv pair's RESP ports: CRUD, a pipeline and WAIT on
the master, reads and a refused write on the slave.

Usage: redis_py.py MASTER_HOST:PORT SLAVE_HOST:PORT
Prints one line per check; exits non-zero on the first that fails.
"""
import sys
import time

import redis


def connect(addr):
    host, port = addr.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), socket_timeout=10)


def main():
    master, slave = connect(sys.argv[1]), connect(sys.argv[2])
    assert master.ping() is True
    assert master.set("py:k", "v1") is True
    assert master.get("py:k") == b"v1"
    assert master.set("py:k", "again", nx=True) is None
    assert master.set("py:absent", "x", xx=True) is None
    assert master.exists("py:k", "py:absent") == 1
    print("crud ok")

    pipe = master.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"py:p{i}", str(i))
    pipe.get("py:p42")
    results = pipe.execute()
    assert results[:100] == [True] * 100, results[:5]
    assert results[100] == b"42"
    print("pipeline ok")

    assert master.delete("py:p0", "py:p1", "py:none") == 2
    assert master.wait(1, 5000) == 1
    print("wait ok")

    deadline = time.monotonic() + 10
    while slave.get("py:p99") != b"99":
        assert time.monotonic() < deadline, "the slave never showed py:p99"
        time.sleep(0.01)
    try:
        slave.set("py:k", "refused")
        raise AssertionError("the slave took a write")
    except redis.exceptions.ReadOnlyError:
        pass
    info = slave.info("replication")
    assert info["role"] == "slave", info
    print("slave ok")

    try:
        master.set("py:ttl", "v", ex=10)
        raise AssertionError("an expiry was taken")
    except redis.exceptions.ResponseError as e:
        assert "no expiry" in str(e), e
    print("refusals ok")


if __name__ == "__main__":
    main()

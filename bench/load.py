"""A load generator in its own process (so it does not share the services' event loop): sends a
list of HTTP requests with N concurrent keep-alive connections and prints one JSON line of results.

    python -m bench.load requests.json --concurrency 20
where requests.json is [[method, url, body-or-null, {headers}], ...].
"""
import argparse
import http.client
import json
import queue
import sys
import threading
import time
from urllib.parse import urlsplit


def run(requests, concurrency):
    work = queue.Queue()
    for item in requests:
        work.put(item)
    latencies, statuses, lock = [], {}, threading.Lock()

    def worker():
        connections = {}
        while True:
            try:
                method, url, body, headers = work.get_nowait()
            except queue.Empty:
                return
            parts = urlsplit(url)
            conn = connections.get(parts.netloc)
            if conn is None:
                conn = connections[parts.netloc] = http.client.HTTPConnection(parts.netloc, timeout=60)
            payload = json.dumps(body).encode() if body is not None else None
            started = time.perf_counter()
            try:
                conn.request(method, parts.path + ("?" + parts.query if parts.query else ""), payload,
                             dict(headers, **({"Content-Type": "application/json"} if payload else {})))
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                connections.pop(parts.netloc, None)
                status = 0
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    duration = time.perf_counter() - started
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0

    return {"count": len(latencies), "seconds": duration, "per_second": len(latencies) / duration,
            "p50_ms": pct(0.50) * 1000, "p99_ms": pct(0.99) * 1000,
            "statuses": {str(k): v for k, v in statuses.items()}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("requests")
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    with open(args.requests) as handle:
        requests = json.load(handle)
    json.dump(run(requests, args.concurrency), sys.stdout)
    print()


if __name__ == "__main__":
    main()

"""Server counters in the Prometheus text format (no client library needed).

Counts requests by path and status, requests whose client left before the answer
(not a status: no answer was sent), connections the server closed by reason
(``connections.py``: deadlines, evictions, malformed HTTP), bytes received, batches
and their sizes, and keeps the last 1,000 request durations per path for
p50/p90/p99 quantiles.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque

import numpy as np

WINDOW = 1000


class Metrics:
    def __init__(self):
        self.requests: Counter[tuple[str, int]] = Counter()
        self.durations: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=WINDOW))
        self.bytes_received = 0
        self.batch_sizes: Counter[int] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()

    def request(self, path: str, status: int, seconds: float) -> None:
        self.requests[(path, status)] += 1
        self.durations[path].append(seconds)

    def disconnect(self, path: str) -> None:
        self.disconnects[path] += 1

    def connection_closed(self, reason: str) -> None:
        self.closed[reason] += 1

    def received(self, n: int) -> None:
        self.bytes_received += n

    def batch(self, size: int) -> None:
        """One request's share of a batch of ``size`` samples (histogram of sizes seen)."""
        self.batch_sizes[size] += 1

    def render(self, *batchers) -> str:
        p = "edgedistill_split_"
        lines = [f"# TYPE {p}requests_total counter"]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'{p}requests_total{{path="{path}",status="{status}"}} {n}')
        lines.append(f"# TYPE {p}client_disconnects_total counter")
        for path, n in sorted(self.disconnects.items()):
            lines.append(f'{p}client_disconnects_total{{path="{path}"}} {n}')
        lines.append(f"# TYPE {p}connections_closed_total counter")
        for reason, n in sorted(self.closed.items()):
            lines.append(f'{p}connections_closed_total{{reason="{reason}"}} {n}')
        lines.append(f"# TYPE {p}request_seconds summary")
        for path, values in sorted(self.durations.items()):
            qs = np.quantile(np.fromiter(values, float), [0.5, 0.9, 0.99])
            for q, v in zip(("0.5", "0.9", "0.99"), qs, strict=True):
                lines.append(f'{p}request_seconds{{path="{path}",quantile="{q}"}} {v:.6f}')
        lines += [f"# TYPE {p}bytes_received_total counter",
                  f"{p}bytes_received_total {self.bytes_received}",
                  f"# TYPE {p}batch_size_requests_total counter"]
        for size, n in sorted(self.batch_sizes.items()):
            lines.append(f'{p}batch_size_requests_total{{size="{size}"}} {n}')
        lines += [f"# TYPE {p}batches_total counter",
                  f"{p}batches_total {sum(b.batches for b in batchers)}",
                  f"# TYPE {p}samples_total counter",
                  f"{p}samples_total {sum(b.samples for b in batchers)}"]
        return "\n".join(lines) + "\n"

"""The benchmark (`make bench`, `python -m tests.bench`): the agent against nginx, wrk and baselines.

Modules: suite (`run_all`: every row in one run), servers (nginx, wrk),
receiver (the delayed / latency Python receiver), naive_peer, loadgen (corpus,
publisher, paced publisher, raw proxy and counter processes), curl_loop (the
bare pycurl loop process), runs (one function per kind of row), paced (issue
10's rows: CPU per delivered event at a paced rate, idle CPU, the pycurl
ceiling), report (table, goals, JSON, PNG). This package imports nothing itself, so
its modules also run as processes (`python -m tests.bench.receiver`).
"""

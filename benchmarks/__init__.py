"""Benchmarks of memory-spine against its own parts (the floors) and a peer (Chroma).

- :mod:`benchmarks.corpus`: a deterministic corpus of real text (docstrings and comments of the installed
  Python code), with selectivity tags and labelled queries.
- :mod:`benchmarks.embeddings`: embeddings of that corpus, cached on disk.
- :mod:`benchmarks.floors`: query embedding, hnswlib and exact numpy search, measured alone.
- :mod:`benchmarks.chroma_peer`: Chroma on the same vectors, run as a subprocess.
- :mod:`benchmarks.service`: a real ``memory-spine serve`` process measured over HTTP.
- :mod:`benchmarks.search_latency`: the one command that runs all of it and writes the results.

Benchmarks measure; they never assert.
"""

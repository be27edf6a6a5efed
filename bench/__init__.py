"""Load generator and llama.cpp comparison for ortserve (`python -m bench`); writes docs/benchmarks.md."""

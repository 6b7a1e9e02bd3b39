"""Tests of modelserve.batching: the pure core, the counters, and the threaded MicroBatcher."""

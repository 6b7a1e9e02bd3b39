"""Tests of modelserve._registry: versions, aliases, integrity, gc, archives, locks, hostile files, processes."""

"""Stateful fake hosts served over loopback HTTP, one per host."""

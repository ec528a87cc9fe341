"""Agent sessions: lifecycle, input queue, exit criteria, timers, status and transcript."""

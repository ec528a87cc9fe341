"""Agents: their configuration, the engines that run their turns, and the tools they may call."""

"""Leaderboard: results files, aggregates across tasks, and the rendered README, page and plots."""

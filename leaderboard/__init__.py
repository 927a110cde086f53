"""Leaderboard: results files and rendered tables."""

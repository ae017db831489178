"""Destinations of priced rides. Each sink reports what it holds durably."""

"""Network parts shared by every pixel agent."""

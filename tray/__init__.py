"""The tray app: a status icon with a menu for staff, next to (or in front of) the agent."""

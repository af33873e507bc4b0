"""The ground floor: errors, choices, settings, file and console helpers. Importing it never imports torch."""

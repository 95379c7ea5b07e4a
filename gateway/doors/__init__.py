"""Access control: door-controller log polling without gaps or duplicates,
the card registry and its validity rules, card pseudonyms."""

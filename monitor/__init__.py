"""How operators see and steer the hub: metrics, health, journal, dead letters, data quality."""

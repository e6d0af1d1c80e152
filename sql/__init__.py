"""The SQL of churnflow (ingest adapters, point-in-time features, labels) as package resources."""

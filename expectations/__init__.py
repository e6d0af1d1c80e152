"""The Great Expectations suites of churnflow (one JSON file per table) as package resources."""

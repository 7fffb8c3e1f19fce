//! Multi-host torture test (being written).

//! Storage backends on turmoil's simulated disk (being built).

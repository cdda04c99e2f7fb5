"""Reports: the build summary and the comparison of many builds. They read artifacts only."""

//! Runnable example pipelines built on the engine; each binary under
//! `src/bin/` starts with a line saying how to run it.

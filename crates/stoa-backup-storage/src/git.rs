//! Git sink (work in progress: see the module once it lands).

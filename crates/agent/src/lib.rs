//! The HPC agent (work in progress).

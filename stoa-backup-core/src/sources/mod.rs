//! Generic sources: any child process's stdout, files and directories.

mod command;
mod file;

pub use command::CommandSource;
pub use file::{FileRestorer, FileSource};

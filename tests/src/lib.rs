pub mod backend;
pub mod bench;
pub mod lab;
pub mod netns;
pub mod packet;

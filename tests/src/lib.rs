pub mod lab;
pub mod netns;
pub mod packet;

pub mod agent_proc;
pub mod backend;
pub mod bench;
pub mod director_pair;
pub mod lab;
pub mod netns;
pub mod packet;
pub mod privileges;

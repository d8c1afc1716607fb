#![no_main]

// The checks are in lb_userspace::fuzzing, so that `cargo test` replays saved inputs too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_userspace::fuzzing::dns_reply(data));

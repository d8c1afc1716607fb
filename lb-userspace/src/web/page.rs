//! The status page's files, served by the agent itself (no CDN).
/// One file of the page.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}
/// The file for a request path: "/" is the page, "/assets/NAME" its scripts and styles.
pub fn asset(_path: &str) -> Option<Asset> {
    None
}

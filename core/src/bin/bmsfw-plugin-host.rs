//! The plugin host: runs one vendor plugin in its own sandboxed process for the bmsfw
//! engine, which starts it. Not meant to be run by hand.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    bmsfw_core::plugin::hosted::child::main(&args)
}

//! The application: every message comes back as it came, and `quit` ends the conversation.
//!
//! This is the original `handle_echo_client` in Rust, and the place to put your own logic:
//! `receive` gives whole messages until the client leaves; `send` answers.

use crate::protocol::connection::Connection;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error, Message};

/// Send every message back as it came until the client leaves; `quit` closes with 1000.
pub fn handle_echo_client(client: &mut Connection) -> Result<(), Error> {
    while let Some(message) = client.receive()? {
        if matches!(&message, Message::Text(text) if text.as_str() == "quit") {
            return client.close(CloseCode::Normal, "bye");
        }
        client.send(message)?;
    }
    Ok(())
}

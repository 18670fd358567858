//! `/rooms/NAME`: a client joins the server's room NAME and hears what is published to it
//! (`POST /publish/NAME` on the page port, or an app's `Server::room(NAME).broadcast`). What the
//! client sends is read and dropped: a room here is a feed, and speaking into it is the
//! backend's part (through the publish API, with its token).

use crate::protocol::connection::Connection;
use crate::protocol::room::valid_room_name;
use crate::protocol::routes::{Refused, Route};
use tungstenite::Error;

/// The path the route is given for.
pub const ROOMS_PATH: &str = "/rooms/*";

/// The route: a valid NAME joins; any other gets 404 before the upgrade.
pub fn route() -> Route {
    Route::new(listen).check(|request| match valid_room_name(room_name(request.path())) {
        true => Ok(()),
        false => Err(Refused::not_found(
            "a room name is 1 to 64 of A-Z a-z 0-9 _ . -",
        )),
    })
}

fn listen(client: &mut Connection) -> Result<(), Error> {
    let name = client
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    client.room(&name).join(&client.sender());
    // Until it leaves (it leaves the room with its connection, however that ends).
    while client.receive()?.is_some() {}
    Ok(())
}

/// NAME, of `/rooms/NAME`.
fn room_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

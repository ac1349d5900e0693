//! The interactive `airlock auth <agent>`: offers the host's login, shows a
//! menu of methods, reads secrets hidden. Only used when stdin and stderr
//! are terminals (`inquire` needs one).

extends RefCounted
## What the [code]NpcVoice[/code] autoload checks before it sends a player's line
## ([code]say[/code], [code]typing[/code]): only what the wire format and the daemon's
## [code]welcome[/code] limits let it see; the daemon judges the rest. Each check returns
## [code][code, message][/code], or an empty array when the line can go.

#region Constants
const TurnState := preload("turn_state.gd")
const TurnTable := preload("turn_table.gd")
## Longest [code]npc_id[/code] the daemon accepts (PROTOCOL.md 3.1).
const MAX_NPC_ID_CHARS: int = 64
#endregion


#region Public Functions
## Why a [code]say[/code] of [param text] to [param npc_id] in a frame of [param frame_bytes]
## bytes cannot be sent ([param connected]: the handshake is done; [param welcome]: the
## daemon's), else empty: not_connected, invalid_npc_id, invalid_priority, text_too_long,
## message_too_large.
static func say_problem(
	connected: bool,
	welcome: Dictionary,
	npc_id: String,
	text: String,
	frame_bytes: int,
	options: Dictionary
) -> PackedStringArray:
	if not connected:
		return PackedStringArray(["not_connected", "not connected"])
	if npc_id.length() < 1 or npc_id.length() > MAX_NPC_ID_CHARS:
		return PackedStringArray(
			[
				"invalid_npc_id",
				"npc_id must have 1 to %d characters, not %d" % [MAX_NPC_ID_CHARS, npc_id.length()]
			]
		)
	var priority_problem: String = TurnState.priority_problem(options)
	if priority_problem != "":
		return PackedStringArray(["invalid_priority", priority_problem])
	return limit_problem(welcome, text, frame_bytes)


## Why [param text], or a frame of [param frame_bytes] bytes, is over the [code]limits[/code] of
## [param welcome] (text_too_long, message_too_large), else empty.
static func limit_problem(welcome: Dictionary, text: String, frame_bytes: int) -> PackedStringArray:
	var limits: Variant = welcome.get("limits")
	if not limits is Dictionary:
		return PackedStringArray()  # a daemon that states no limits enforces its own
	var max_chars: int = TurnTable.int_field(limits, "max_text_chars")
	var length: int = text.strip_edges().length()
	if max_chars > 0 and length > max_chars:
		return PackedStringArray(
			[
				"text_too_long",
				"the player's line has %d characters; the limit is %d" % [length, max_chars]
			]
		)
	var max_bytes: int = TurnTable.int_field(limits, "max_message_bytes")
	if max_bytes > 0 and frame_bytes > max_bytes:
		return PackedStringArray(
			[
				"message_too_large",
				"the say message is %d bytes; the limit is %d" % [frame_bytes, max_bytes]
			]
		)
	return PackedStringArray()
#endregion

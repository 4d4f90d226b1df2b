@tool
extends RefCounted
## ZMTP 3.1 bytes (NULL mechanism): greeting, READY, frames, commands, PING/PONG.
##
## Pure functions over [PackedByteArray], no socket: [code]zmtp_connection.gd[/code] drives
## them. The wire format is section 2 of [code]bridge_protocol/PROTOCOL.md[/code] (RFC 23 and
## RFC 37). Every ZMTP integer is big-endian, so sizes are assembled byte by byte
## ([code]decode_u16[/code] and friends are host-endian). [code]test/unit/zmtp_checks.gd[/code]
## tests them; tests/test_godot_unit.py compares their bytes with PROTOCOL.md's.

#region Constants
## Length of a ZMTP 3 greeting, each way.
const GREETING_SIZE: int = 64
## Frame flag: another frame of the same message follows.
const FLAG_MORE: int = 0x01
## Frame flag: the size field is a u64 BE (8 bytes), else a u8.
const FLAG_LONG: int = 0x02
## Frame flag: a ZMTP command (READY, ERROR, PING, PONG), not message data.
const FLAG_COMMAND: int = 0x04
## Bodies longer than this use the long size form (libzmq does the same).
const SHORT_BODY_MAX: int = 255
## The security mechanism, NUL-padded to 20 bytes in the greeting.
const MECHANISM: String = "NULL"
#endregion


#region Public Functions
## The 64-byte greeting a client sends as soon as TCP connects: signature [code]FF[/code],
## 8 padding bytes, [code]7F[/code], version 3.1, mechanism "NULL", as-server 0, filler.
static func greeting() -> PackedByteArray:
	var data := PackedByteArray()
	data.resize(GREETING_SIZE)
	data.fill(0)
	data[0] = 0xFF
	data[9] = 0x7F
	data[10] = 3
	data[11] = 1
	var mechanism: PackedByteArray = MECHANISM.to_ascii_buffer()
	for i: int in mechanism.size():
		data[12 + i] = mechanism[i]
	return data


## Checks the first bytes of the peer's greeting; call it as bytes arrive (any prefix works, so a
## peer that speaks HTTP or TLS is caught on its first byte). Returns "" when the bytes so far
## are a valid ZMTP 3 NULL greeting, else a human-readable reason.
static func check_greeting(data: PackedByteArray) -> String:
	var size: int = data.size()
	if size >= 1 and data[0] != 0xFF:
		return "the peer is not a ZeroMQ socket (first byte 0x%02x, expected 0xff)" % data[0]
	if size >= 10 and (data[9] & 0x01) == 0:
		return "the peer speaks ZMTP 1.0, not ZMTP 3"
	if size >= 11 and data[10] < 3:
		return "the peer speaks ZMTP %d, not ZMTP 3" % data[10]
	if size >= 32:
		var expected: PackedByteArray = MECHANISM.to_ascii_buffer()
		expected.resize(20)
		if data.slice(12, 32) != expected:
			var name: String = data.slice(12, 32).get_string_from_ascii()
			return "the peer uses security mechanism %s, expected NULL" % name
	return ""


## [param value] (0 .. 2^63-1) as 8 big-endian bytes.
static func encode_u64_be(value: int) -> PackedByteArray:
	var data := PackedByteArray()
	data.resize(8)
	for i: int in 8:
		data[7 - i] = (value >> (8 * i)) & 0xFF
	return data


## The big-endian unsigned integer of [param count] bytes at [param offset] (count <= 8).
static func decode_uint_be(data: PackedByteArray, offset: int, count: int) -> int:
	var value: int = 0
	for i: int in count:
		value = (value << 8) | data[offset + i]
	return value


## One frame: flags, size (u8, or u64 BE above 255 bytes), body.
static func encode_frame(
	body: PackedByteArray, more: bool = false, command: bool = false
) -> PackedByteArray:
	var flags: int = (FLAG_MORE if more else 0) | (FLAG_COMMAND if command else 0)
	var data := PackedByteArray()
	if body.size() > SHORT_BODY_MAX:
		data.append(flags | FLAG_LONG)
		data.append_array(encode_u64_be(body.size()))
	else:
		data.append(flags)
		data.append(body.size())
	data.append_array(body)
	return data


## A whole message: every frame but the last has MORE set.
static func encode_message(frames: Array[PackedByteArray]) -> PackedByteArray:
	var data := PackedByteArray()
	for i: int in frames.size():
		data.append_array(encode_frame(frames[i], i < frames.size() - 1))
	return data


## A command frame: name-len(1), name, data.
static func encode_command(name: String, payload: PackedByteArray) -> PackedByteArray:
	var body := PackedByteArray()
	var name_bytes: PackedByteArray = name.to_ascii_buffer()
	body.append(name_bytes.size())
	body.append_array(name_bytes)
	body.append_array(payload)
	return encode_frame(body, false, true)


## The READY command announcing [param socket_type] (spelled exactly "Socket-Type": libzmq
## compares the property name case-sensitively). For a DEALER it is 30 bytes.
static func ready_command(socket_type: String) -> PackedByteArray:
	var name: PackedByteArray = "Socket-Type".to_ascii_buffer()
	var value: PackedByteArray = socket_type.to_ascii_buffer()
	var payload := PackedByteArray()
	payload.append(name.size())
	payload.append_array(name)
	payload.append_array(encode_u64_be(value.size()).slice(4, 8))
	payload.append_array(value)
	return encode_command("READY", payload)


## A PING command: [param ttl_ds] (deciseconds, u16 BE) and up to 16 bytes of context.
static func ping_command(ttl_ds: int, context: PackedByteArray) -> PackedByteArray:
	var payload := PackedByteArray([(ttl_ds >> 8) & 0xFF, ttl_ds & 0xFF])
	payload.append_array(context)
	return encode_command("PING", payload)


## The PONG answering a PING whose command data is [param ping_data]: it echoes the context
## that follows the 2-byte TTL ([code]04 05 04 "PONG"[/code] when the context is empty).
static func pong_for_ping(ping_data: PackedByteArray) -> PackedByteArray:
	var context := PackedByteArray()
	if ping_data.size() > 2:
		context = ping_data.slice(2)
	return encode_command("PONG", context)


## Decodes the frame starting at [param offset] of [param buffer]. Returns null while the
## frame is incomplete, else a [Frame] whose [member Frame.error] is set when the bytes
## break the protocol (reserved flag bits, a size above [param max_body_bytes] or 2^63).
static func decode_frame(buffer: PackedByteArray, offset: int, max_body_bytes: int) -> Frame:
	var available: int = buffer.size() - offset
	if available < 2:
		return null
	var frame := Frame.new()
	frame.flags = buffer[offset]
	if (frame.flags & ~(FLAG_MORE | FLAG_LONG | FLAG_COMMAND)) != 0:
		frame.error = "reserved frame flag bits set (0x%02x)" % frame.flags
		return frame
	var header: int = 2
	var body_size: int = buffer[offset + 1]
	if (frame.flags & FLAG_LONG) != 0:
		header = 9
		if available < header:
			return null
		if (buffer[offset + 1] & 0x80) != 0:
			frame.error = "frame size does not fit in 63 bits"
			return frame
		body_size = decode_uint_be(buffer, offset + 1, 8)
	if body_size > max_body_bytes:
		frame.error = "frame of %d bytes exceeds the %d-byte limit" % [body_size, max_body_bytes]
		return frame
	if available < header + body_size:
		return null
	frame.body = buffer.slice(offset + header, offset + header + body_size)
	frame.wire_size = header + body_size
	return frame


## Splits a command frame's body into name and data; [member Command.error] is set when the
## name length overruns the body.
static func parse_command(body: PackedByteArray) -> Command:
	var command := Command.new()
	if body.is_empty() or body[0] + 1 > body.size():
		command.error = "malformed command frame"
		return command
	var name_size: int = body[0]
	command.name = body.slice(1, 1 + name_size).get_string_from_ascii()
	command.data = body.slice(1 + name_size)
	return command


## The properties of a READY command's data ([code]name-len(1) name value-len(4, BE) value[/code]
## repeated), as name -> [PackedByteArray]. Returns an empty Dictionary when malformed.
static func parse_properties(data: PackedByteArray) -> Dictionary:
	var properties: Dictionary = {}
	var pos: int = 0
	while pos < data.size():
		var name_size: int = data[pos]
		if pos + 1 + name_size + 4 > data.size():
			return {}
		var name: String = data.slice(pos + 1, pos + 1 + name_size).get_string_from_ascii()
		pos += 1 + name_size
		var value_size: int = decode_uint_be(data, pos, 4)
		pos += 4
		if pos + value_size > data.size():
			return {}
		properties[name] = data.slice(pos, pos + value_size)
		pos += value_size
	return properties


## The reason text of an ERROR command's data ([code]reason-len(1) reason[/code]).
static func error_reason(data: PackedByteArray) -> String:
	if data.is_empty():
		return ""
	return data.slice(1, 1 + data[0]).get_string_from_utf8()


#endregion


#region Inner Classes
## One decoded frame.
class Frame:
	extends RefCounted
	## Flag byte: [constant FLAG_MORE], [constant FLAG_LONG], [constant FLAG_COMMAND].
	var flags: int = 0
	## The frame's payload.
	var body: PackedByteArray = PackedByteArray()
	## Bytes the frame took on the wire (header + body).
	var wire_size: int = 0
	## Non-empty when the bytes break the protocol; the connection must then be dropped.
	var error: String = ""

	## True for a ZMTP command frame (flag 0x04).
	func is_command() -> bool:
		return (flags & 0x04) != 0

	## True when another frame of the same message follows (flag 0x01).
	func has_more() -> bool:
		return (flags & 0x01) != 0


## One decoded command.
class Command:
	extends RefCounted
	## Command name, e.g. "READY", "PING".
	var name: String = ""
	## Bytes after the name.
	var data: PackedByteArray = PackedByteArray()
	## Non-empty when the command frame is malformed.
	var error: String = ""
#endregion

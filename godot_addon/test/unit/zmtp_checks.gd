extends RefCounted
## Unit checks of the ZMTP codec ([code]zmtp_codec.gd[/code]) and of the connection's
## reconnect back-off ([code]zmtp_connection.gd[/code]); run by [code]run_tests.gd[/code]. Also
## prints the bytes the codec writes (and the peer bytes it reads) as one line,
## [constant MARK] + JSON: tests/test_godot_unit.py compares them with the bytes
## bridge_protocol/PROTOCOL.md shows.

#region Constants
const Codec := preload("res://addons/npc_voice/zmtp_codec.gd")
const ZmtpConnection := preload("res://addons/npc_voice/zmtp_connection.gd")
## Prefix of the line of codec bytes.
const MARK: String = "NPCV_CODEC "
const DEALER_READY_HEX: String = (
	"041c055245414459" + "0b536f636b65742d54797065" + "00000006" + "4445414c4552"
)
const ROUTER_READY_HEX: String = (
	"0429055245414459"
	+ "0b536f636b65742d54797065"
	+ "00000006"
	+ "524f55544552"
	+ "084964656e74697479"
	+ "00000000"
)
## libzmq's greeting: padding 00..01, as-server 0.
const LIBZMQ_GREETING_HEX: String = (
	"ff00000000000000017f03014e554c4c"
	+ "0000000000000000000000000000000000000000000000000000000000000000"
	+ "00000000000000000000000000000000"
)
## Body sizes whose frame headers are printed ("+": MORE set); PROTOCOL.md section 4 shows
## frames of 44 (hello), 115 (an audio header), 565 (welcome) and 2204 bytes (PCM).
const FRAME_SIZES: Array[String] = ["44", "115+", "255", "256+", "565", "2204"]
#endregion

#region Private Variables
var _check: Callable
#endregion


#region Engine Callbacks
## [param check]: the runner's [code]check(condition: bool, what: String)[/code].
func _init(check: Callable) -> void:
	_check = check


#endregion


#region Public Functions
func run() -> void:
	_test_greeting()
	_test_ready()
	_test_frames()
	_test_split_input()
	_test_ping_pong()
	_test_backoff()
	_print_codec_bytes()


## [param text] (hex digits) as bytes.
static func hex(text: String) -> PackedByteArray:
	var data := PackedByteArray()
	for i: int in range(0, text.length(), 2):
		data.append(text.substr(i, 2).hex_to_int())
	return data


#endregion


#region Private Functions
func _test_greeting() -> void:
	var greeting: PackedByteArray = Codec.greeting()
	_check.call(greeting.size() == 64, "greeting is 64 bytes")
	_check.call(
		greeting.slice(0, 16).hex_encode() == "ff00000000000000007f03014e554c4c",
		"greeting starts with signature, version 3.1 and NULL"
	)
	_check.call(Codec.check_greeting(greeting) == "", "our own greeting is valid")
	_check.call(Codec.check_greeting(hex(LIBZMQ_GREETING_HEX)) == "", "libzmq's greeting is valid")
	var http: PackedByteArray = "HTTP/1.1 400 Bad Request\r\n".to_ascii_buffer()
	_check.call(Codec.check_greeting(http).begins_with("the peer is not"), "HTTP is rejected")
	_check.call(Codec.check_greeting(http.slice(0, 1)) != "", "HTTP is rejected on its first byte")
	var plain: PackedByteArray = greeting.duplicate()
	plain[12] = "P".unicode_at(0)
	_check.call(Codec.check_greeting(plain) != "", "mechanism PLAIN is rejected")
	var zmtp10: PackedByteArray = greeting.duplicate()
	zmtp10[9] = 0x7E
	_check.call("1.0" in Codec.check_greeting(zmtp10), "ZMTP 1.0 is rejected")
	var zmtp2: PackedByteArray = greeting.duplicate()
	zmtp2[10] = 2
	_check.call("ZMTP 2" in Codec.check_greeting(zmtp2), "ZMTP 2 is rejected")


func _test_ready() -> void:
	var ready: PackedByteArray = Codec.ready_command("DEALER")
	_check.call(ready.hex_encode() == DEALER_READY_HEX and ready.size() == 30, "DEALER READY bytes")
	var frame: Codec.Frame = Codec.decode_frame(hex(ROUTER_READY_HEX), 0, 1 << 20)
	_check.call(frame != null and frame.is_command(), "ROUTER READY decodes as a command")
	var command: Codec.Command = Codec.parse_command(frame.body)
	_check.call(command.name == "READY", "command name READY")
	var properties: Dictionary = Codec.parse_properties(command.data)
	_check.call(properties.keys() == ["Socket-Type", "Identity"], "two properties, in order")
	var socket_type: PackedByteArray = properties.get("Socket-Type", PackedByteArray())
	_check.call(socket_type.get_string_from_ascii() == "ROUTER", "Socket-Type ROUTER")
	_check.call(properties.get("Identity") == PackedByteArray(), "empty Identity present")
	_check.call(Codec.parse_properties(command.data.slice(0, 20)).is_empty(), "torn property")
	_check.call(Codec.parse_command(PackedByteArray([5, 0x52])).error != "", "torn command name")
	var error: PackedByteArray = PackedByteArray([14]) + "access denied!".to_ascii_buffer()
	_check.call(Codec.error_reason(error) == "access denied!", "ERROR reason")


func _test_frames() -> void:
	var short_body: PackedByteArray = "x".repeat(255).to_ascii_buffer()
	var long_body: PackedByteArray = "y".repeat(256).to_ascii_buffer()
	var short_frame: PackedByteArray = Codec.encode_frame(short_body, true)
	var long_frame: PackedByteArray = Codec.encode_frame(long_body)
	_check.call(short_frame[0] == 0x01 and short_frame[1] == 255, "255 bytes: short form, MORE")
	_check.call(long_frame.slice(0, 9).hex_encode() == "020000000000000100", "256: long form")
	var stream: PackedByteArray = short_frame + long_frame
	_check.call(Codec.decode_frame(stream, 0, 1 << 20).wire_size == 257, "short frame size")
	_check.call(Codec.decode_frame(stream.slice(0, 100), 0, 1 << 20) == null, "incomplete frame")
	var second: Codec.Frame = Codec.decode_frame(stream, 257, 1 << 20)
	_check.call(second.body == long_body and not second.has_more(), "long frame body")
	_check.call(Codec.decode_frame(stream, 257, 100).error != "", "frame above the cap: error")
	var announced: PackedByteArray = PackedByteArray([0x02]) + Codec.encode_u64_be(5000)
	_check.call(Codec.decode_frame(announced, 0, 4096).error != "", "cap checked before the body")
	_check.call(Codec.decode_frame(PackedByteArray([0x08, 0]), 0, 10).error != "", "reserved flag")
	var huge: PackedByteArray = PackedByteArray([0x02, 0x80, 0, 0, 0, 0, 0, 0, 1])
	_check.call(Codec.decode_frame(huge, 0, 1 << 20).error != "", "size with the top bit set")


## Bytes trickling in one at a time: each frame decodes once it is whole, not before.
func _test_split_input() -> void:
	var parts: Array[PackedByteArray] = [
		"h".repeat(10).to_ascii_buffer(), "p".repeat(3000).to_ascii_buffer()
	]
	var stream: PackedByteArray = Codec.encode_message(parts)
	stream.append_array(Codec.encode_command("PING", PackedByteArray([0, 1])))
	var decoded: Array[String] = []
	var pos: int = 0
	for end: int in range(1, stream.size() + 1):
		var frame: Codec.Frame = Codec.decode_frame(stream.slice(0, end), pos, 1 << 20)
		if frame != null:  # "flags:body size@bytes received so far"
			decoded.append("%02x:%d@%d" % [frame.flags, frame.body.size(), end])
			pos += frame.wire_size
	var expected: Array[String] = ["01:10@12", "02:3000@3021", "04:7@3030"]
	_check.call(decoded == expected, "split input decodes at each frame's end: %s" % [decoded])


func _test_ping_pong() -> void:
	var ping: PackedByteArray = Codec.ping_command(100, PackedByteArray([1, 2]))
	var command: Codec.Command = Codec.parse_command(Codec.decode_frame(ping, 0, 64).body)
	_check.call(command.name == "PING", "PING round trip")
	var pong: PackedByteArray = Codec.pong_for_ping(command.data)
	_check.call(pong.hex_encode() == "0407" + "04504f4e47" + "0102", "PONG echoes the context")
	_check.call(
		Codec.pong_for_ping(PackedByteArray([0, 10])).hex_encode() == "040504504f4e47", "PONG"
	)


## Reconnect delays: 100 ms doubling to 2 s (PROTOCOL.md 2.5), minus up to 25 % jitter.
func _test_backoff() -> void:
	var connection := ZmtpConnection.new()
	for attempt: int in 10:
		var base: int = mini(2000, 100 << attempt)
		var delays: Dictionary = {}
		var in_range: bool = true
		for i: int in 50:
			var delay: int = connection._backoff_delay_ms(attempt)
			in_range = in_range and delay >= 0.75 * base - 1 and delay <= base
			delays[delay] = true
		_check.call(
			in_range, "back-off after %d failures: within 75-100 %% of %d" % [attempt, base]
		)
		_check.call(delays.size() > 1, "back-off after %d failures has jitter" % attempt)


## One line: what the codec writes, and peer bytes with what it reads from them.
func _print_codec_bytes() -> void:
	var headers: Dictionary = {}
	for size: String in FRAME_SIZES:
		var body := PackedByteArray()
		body.resize(int(size))
		var frame: PackedByteArray = Codec.encode_frame(body, size.ends_with("+"))
		headers[size] = frame.slice(0, frame.size() - body.size()).hex_encode()
	var router_ready: Codec.Frame = Codec.decode_frame(hex(ROUTER_READY_HEX), 0, 1 << 20)
	var properties: Dictionary = {}
	var parsed: Dictionary = Codec.parse_properties(Codec.parse_command(router_ready.body).data)
	for property: String in parsed:
		var value: PackedByteArray = parsed[property]
		properties[property] = value.get_string_from_ascii()
	var ping: PackedByteArray = Codec.ping_command(200, PackedByteArray())
	var line: Dictionary = {
		"greeting": Codec.greeting().hex_encode(),
		"dealer_ready": Codec.ready_command("DEALER").hex_encode(),
		"ping_ttl_200": ping.hex_encode(),
		"pong": Codec.pong_for_ping(Codec.parse_command(ping.slice(2)).data).hex_encode(),
		"pong_ctx":
		Codec.pong_for_ping(PackedByteArray([0, 10]) + "ctx".to_ascii_buffer()).hex_encode(),
		"frame_headers": headers,
		"libzmq_greeting": LIBZMQ_GREETING_HEX,
		"libzmq_greeting_problem": Codec.check_greeting(hex(LIBZMQ_GREETING_HEX)),
		"router_ready": ROUTER_READY_HEX,
		"router_ready_properties": properties,
	}
	print(MARK + JSON.stringify(line))
#endregion

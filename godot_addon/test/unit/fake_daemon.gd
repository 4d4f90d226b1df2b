extends RefCounted
## Helpers of the unit checks that drive an [code]NpcVoice[/code] autoload instance by hand: one
## that never connects, whose connection is marked open without a socket (white box: what it
## sends stays in the connection's send buffer, read back by [method sent]), fed the daemon's
## messages by [method says].

#region Constants
const Client := preload("res://addons/npc_voice/npc_voice_client.gd")
const Codec := preload("res://addons/npc_voice/zmtp_codec.gd")
const ZmtpConnection := preload("res://addons/npc_voice/zmtp_connection.gd")
const AUTO_CONNECT: String = "npc_voice/connection/auto_connect"
#endregion


#region Public Functions
## A new autoload instance inside [param tree], "connected" (no socket), not polling.
static func new_client(tree: SceneTree) -> Client:
	var auto_connect: Variant = ProjectSettings.get_setting(AUTO_CONNECT)
	ProjectSettings.set_setting(AUTO_CONNECT, false)
	var client: Client = Client.new()
	tree.root.add_child(client)
	ProjectSettings.set_setting(AUTO_CONNECT, auto_connect)
	client.set_process(false)  # no socket to poll
	client._connection.state = ZmtpConnection.State.OPEN
	return client


## Feeds [param client] the daemon's [param message] (an [code]audio_block[/code] with
## [param pcm]).
static func says(client: Client, message: Dictionary, pcm := PackedByteArray()) -> void:
	var frames: Array[PackedByteArray] = [JSON.stringify(message).to_utf8_buffer()]
	if message["type"] == "audio_block":
		frames.append(pcm)
	client._on_message_received(frames)


## Feeds [param client] one block of [param samples] samples of silence of [param turn_id]
## (chunk [param chunk_index]).
static func block(
	client: Client, turn_id: int, seq: int, samples: int = 4, chunk_index: int = 0
) -> void:
	var header: Dictionary = {
		"type": "audio_block",
		"turn_id": turn_id,
		"seq": seq,
		"sample_rate_hz": 22050,
		"sample_count": samples,
		"chunk_index": chunk_index,
		"final": false
	}
	var pcm := PackedByteArray()
	pcm.resize(2 * samples)
	says(client, header, pcm)


## The JSON messages [param client] has sent so far (its send buffer, never flushed).
static func sent(client: Client) -> Array[Dictionary]:
	var data: PackedByteArray = client._connection._tx
	var found: Array[Dictionary] = []
	var pos: int = 0
	var frame: Codec.Frame = Codec.decode_frame(data, pos, 1 << 20)
	while frame != null:
		if not frame.is_command() and frame.body.size() > 0 and frame.body[0] == 0x7B:  # "{"
			found.append(JSON.parse_string(frame.body.get_string_from_utf8()))
		pos += frame.wire_size
		frame = Codec.decode_frame(data, pos, 1 << 20)
	return found


## The types of the messages [param client] has sent from the [param since]-th on.
static func sent_types(client: Client, since: int = 0) -> Array[String]:
	var types: Array[String] = []
	for message: Dictionary in sent(client).slice(since):
		types.append(message["type"])
	return types
#endregion

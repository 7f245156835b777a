'use strict'

// 1对1 通话客户端（课程风格）：socket.io 2.x，监听 otherjoin，候选者用 label/id/candidate。
// 这个文件是 UTF-8 编码的；如果服务器不声明 charset，浏览器会按 windows-1252 解码，
// 下面几行里的全角空格（U+3000）就会变成非法字符，整个脚本无法解析。

var localVideo = document.querySelector('video#localvideo');
var remoteVideo = document.querySelector('video#remotevideo');
var btnConn = document.querySelector('button#connserver');
var btnLeave = document.querySelector('button#leave');
var statusText = document.querySelector('span#status');

// 课程里这里写死了 TURN 服务器；实验网络里只有我们自己的服务器
var pcConfig = {
  'iceServers': [{
    'urls': 'stun:call.test:3478'
  }]
};

var localStream = null;
var pc = null;
var roomid;
var socket = null;
var state = 'init';

//获取url参数
function getQueryVariable(variable)
{
　　var query = window.location.search.substring(1);
　　var vars = query.split("&");
　　for (var i = 0; i < vars.length; i++) {
　　　　var pair = vars[i].split("=");
　　　　if (pair[0] == variable) { return pair[1]; }
　　}
　　return (false);
}

function setStatus(text) {
	statusText.textContent = text;
}

function sendMessage(roomid, data) {
	socket.emit('message', roomid, data);
}

function conn() {
	socket = io.connect();

	socket.on('joined', function (room, id) {
		state = 'joined';
		//创建 peerconnection 并绑定本地音视频
		createPeerConnection();
		bindTracks();
		btnConn.disabled = true;
		btnLeave.disabled = false;
		setStatus('已加入房间，等待对方');
	});

	socket.on('otherjoin', function (room) {
		//对方加入：如果之前的对方走了，重新创建 peerconnection
		if (state === 'joined_unbind') {
			createPeerConnection();
			bindTracks();
		}
		state = 'joined_conn';
		call();
	});

	socket.on('full', function (room, id) {
		socket.disconnect();
		state = 'leaved';
		setStatus('房间已满');
	});

	socket.on('leaved', function (room, id) {
		state = 'leaved';
		socket.disconnect();
		btnConn.disabled = false;
		btnLeave.disabled = true;
		setStatus('已离开');
	});

	socket.on('bye', function (room, id) {
		state = 'joined_unbind';
		hangup();
		setStatus('对方已离开');
	});

	socket.on('message', function (room, data) {
		if (data === null || data === undefined) {
			return;
		}
		if (data.hasOwnProperty('type') && data.type === 'offer') {
			pc.setRemoteDescription(new RTCSessionDescription(data));
			pc.createAnswer()
				.then(getAnswer)
				.catch(handleAnswerError);
		} else if (data.hasOwnProperty('type') && data.type == 'answer') {
			pc.setRemoteDescription(new RTCSessionDescription(data));
		} else if (data.hasOwnProperty('type') && data.type === 'candidate') {
			var candidate = new RTCIceCandidate({
				sdpMLineIndex: data.label,
				candidate: data.candidate
			});
			pc.addIceCandidate(candidate);
		}
	});

	roomid = getQueryVariable('room');
	socket.emit('join', roomid);
}

function start() {
	navigator.mediaDevices.getUserMedia({ video: true, audio: true })
		.then(function (stream) {
			localStream = stream;
			localVideo.srcObject = localStream;
			conn();
		})
		.catch(function (err) {
			setStatus('无法打开摄像头：' + err.name);
		});
}

function getRemoteStream(e) {
	remoteVideo.srcObject = e.streams[0];
	setStatus('通话中');
}

function createPeerConnection() {
	if (!pc) {
		pc = new RTCPeerConnection(pcConfig);
		pc.onicecandidate = function (e) {
			if (e.candidate) {
				sendMessage(roomid, {
					type: 'candidate',
					label: e.candidate.sdpMLineIndex,
					id: e.candidate.sdpMid,
					candidate: e.candidate.candidate
				});
			}
		};
		pc.ontrack = getRemoteStream;
	}
}

function bindTracks() {
	localStream.getTracks().forEach(function (track) {
		pc.addTrack(track, localStream);
	});
}

function getOffer(desc) {
	pc.setLocalDescription(desc);
	sendMessage(roomid, desc);
}

function getAnswer(desc) {
	pc.setLocalDescription(desc);
	sendMessage(roomid, desc);
}

function handleAnswerError(err) {
	console.error('创建 answer 失败：', err);
}

function call() {
	if (state === 'joined_conn') {
		pc.createOffer({ offerToReceiveAudio: 1, offerToReceiveVideo: 1 })
			.then(getOffer)
			.catch(function (err) { console.error('创建 offer 失败：', err); });
	}
}

function hangup() {
	if (pc) {
		pc.close();
		pc = null;
	}
}

function leave() {
	if (socket) {
		socket.emit('leave', roomid);
	}
	hangup();
}

btnConn.onclick = start;
btnLeave.onclick = leave;

package agent

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"
)

// Directory junctions (NTFS mount points) are what InstallDir\current and InstallDir\previous
// are on Windows: see install_windows.go. This file builds their reparse data, which is plain
// bytes, so that it is tested on every OS.

// ioReparseTagMountPoint is IO_REPARSE_TAG_MOUNT_POINT, the reparse tag of a junction.
const ioReparseTagMountPoint = 0xA0000003

// maxReparseData is MAXIMUM_REPARSE_DATA_BUFFER_SIZE.
const maxReparseData = 16 << 10

// mountPointReparseData returns the REPARSE_DATA_BUFFER that makes a directory a junction to
// target, an absolute path on a local drive such as C:\Program Files\App\releases\1.2.0 (a
// junction cannot point at a network share). The layout, all little-endian:
//
//	ReparseTag            uint32  IO_REPARSE_TAG_MOUNT_POINT
//	ReparseDataLength     uint16  bytes after this 8-byte header
//	Reserved              uint16
//	SubstituteNameOffset  uint16  0: in bytes, into PathBuffer
//	SubstituteNameLength  uint16  in bytes, without the NUL
//	PrintNameOffset       uint16  SubstituteNameLength + 2
//	PrintNameLength       uint16
//	PathBuffer            UTF-16: \??\<target> NUL <target> NUL
func mountPointReparseData(target string) ([]byte, error) {
	target = strings.TrimPrefix(target, `\\?\`)
	if len(target) < 3 || target[1] != ':' || target[2] != '\\' || strings.HasPrefix(target, `\\`) {
		return nil, fmt.Errorf("junction target %q: want an absolute path on a local drive, such as C:\\dir", target)
	}
	sub := utf16.Encode([]rune(`\??\` + target))
	printName := utf16.Encode([]rune(target))
	pathBytes := (len(sub) + 1 + len(printName) + 1) * 2
	dataLen := 8 + pathBytes // the four offsets and lengths, then the paths
	if 8+dataLen > maxReparseData {
		return nil, fmt.Errorf("junction target %q: path too long", target)
	}
	b := make([]byte, 0, 8+dataLen)
	le := binary.LittleEndian
	b = le.AppendUint32(b, ioReparseTagMountPoint)
	b = le.AppendUint16(b, uint16(dataLen))
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)                        // SubstituteNameOffset
	b = le.AppendUint16(b, uint16(len(sub)*2))       // SubstituteNameLength
	b = le.AppendUint16(b, uint16((len(sub)+1)*2))   // PrintNameOffset
	b = le.AppendUint16(b, uint16(len(printName)*2)) // PrintNameLength
	for _, u := range append(append(sub, 0), append(printName, 0)...) {
		b = le.AppendUint16(b, u)
	}
	return b, nil
}

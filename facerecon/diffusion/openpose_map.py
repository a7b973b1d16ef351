"""Data: OpenPose's face/body keypoint sets expressed in mediapipe face-mesh (468-point) indices.

OpenPose's 70-point face set is the iBUG 68-point layout (jaw 0-16, brows 17-26, nose 27-35,
eyes 36-47, outer lips 48-59, inner lips 60-67) plus the two pupils (68 subject-right,
69 subject-left). "Right" always means the subject's right, which is the image LEFT in a
frontal photo. Each iBUG point is given by the mediapipe vertex at the same anatomical spot
(jaw points follow the face oval from the upper cheek by the ear down to the chin; the eye
corners and lid points follow the eye rings; 4 is the nose tip, 2 the subnasale). Pupils are
the mean of each eye ring (the 468-point mesh has no iris).

The body set is OpenPose's COCO-18 order; the limbs, their colours (RGB) and the drawing sizes
are those of the OpenPose annotator ControlNet-OpenPose was trained on (only the head and
shoulder parts are used here).
"""

from __future__ import annotations

FACE_68 = (
    # jaw 0-16: subject's right (image left) upper cheek → chin (8) → subject's left
    127, 93, 58, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 288, 323, 356,
    # right brow 17-21 (outer → inner), left brow 22-26 (inner → outer)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30 (nasion → tip), lower nose 31-35 (right alar → subnasale → left alar)
    168, 197, 5, 4, 98, 97, 2, 326, 327,
    # right eye 36-41: outer corner, upper ×2, inner corner, lower ×2
    33, 160, 158, 133, 153, 144,
    # left eye 42-47: inner corner, upper ×2, outer corner, lower ×2
    362, 385, 387, 263, 373, 380,
    # outer lips 48-59: right corner, upper lip → left corner, lower lip back
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    # inner lips 60-67
    78, 82, 13, 312, 308, 317, 14, 87,
)
RIGHT_EYE_RING = (33, 133, 160, 159, 158, 144, 145, 153)  # subject's right eye (image left)
LEFT_EYE_RING = (263, 362, 387, 386, 385, 373, 374, 380)  # element-wise mirror of RIGHT_EYE_RING
N_FACE = 70  # FACE_68 + two pupils

# mirror permutation of the 70 face points (iBUG flip map + pupils)
FACE_FLIP = (
    16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
    26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
    27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,
    64, 63, 62, 61, 60, 67, 66, 65,
    69, 68,
)

# head geometry landmarks
NOSE_TIP = 4
RIGHT_EAR_SIDE, LEFT_EAR_SIDE = 234, 454  # face-oval points at the tragus, subject's right / left
FOREHEAD, CHIN = 10, 152

# OpenPose COCO-18 body keypoints
BODY_NAMES = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
              "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
N_BODY = 18
BODY_FLIP = (0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16)
# limbs (0-based keypoint pairs) in the annotator's order; limb i is drawn in BODY_COLORS[i]
BODY_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
              (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
BODY_COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
               (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
               (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
FACE_COLOR = (255, 255, 255)
# annotator sizes at its 512-pixel working resolution: keypoint radius, limb half-width, face dot radius
BODY_RADIUS_512, STICK_WIDTH_512, FACE_RADIUS_512 = 4, 4, 3
LIMB_ALPHA = 0.6  # limbs are blended over the canvas with this weight

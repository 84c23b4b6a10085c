"""One statement for one thing: the shapes of repeat found in real VQA-RAD and SLAKE summaries, here with other organs
and wording (so the rules are general), and pairs of different facts about one subject that must both stay."""

from __future__ import annotations

import pytest

from vmed.data.schema import Turn as T
from vmed.data.summaries import template_summary
from vmed.data.summary_audit import summary_issues
from vmed.data.summary_words import stems


@pytest.mark.parametrize(
    "turns, expected",
    [
        pytest.param([T("Are there any abnormalities with the contour of the spleen?", "No"), T("Is the spleen contour abnormal?", "No")],
                     "No abnormalities with the contour of the spleen are seen.", id="no-abnormality-is-not-abnormal"),
        pytest.param([T("Where is the nodule located?", "Left lung"), T("Which lobe is the nodule in?", "Left lower lobe")],
                     "The nodule is in the left lower lobe.", id="lobe-inside-its-lung"),
        pytest.param([T("Where is the mass?", "Right lung"), T("Where is the mass located?", "Upper right lung")],
                     "The mass is in the upper right lung.", id="upper-lung-inside-the-lung"),
        pytest.param([T("Where is the atelectasis?", "Left Lung, Right"), T("Can atelectasis be observed on the upper left lung?", "Yes")],
                     "The atelectasis is in both lungs.", id="both-lungs-contain-one-side"),
        pytest.param([T("What does enlarged spleen suggest?", "Portal hypertension"),
                      T("What does the appearance of the spleen suggest?", "Portal hypertension")],
                     "Enlarged spleen suggests portal hypertension.", id="attribute-noun-in-the-subject"),
        pytest.param([T("Is there left hemidiaphragm elevation?", "Yes"), T("Is the left hemidiaphragm higher than the right?", "Yes")],
                     "Left hemidiaphragm elevation is seen.", id="than-the-right-is-no-side"),
        pytest.param([T("Is there evidence of a left basal consolidation?", "Yes"),
                      T("Is a consolidation present near the left lung field?", "Yes")],
                     "There is evidence of a left basal consolidation.", id="finding-at-a-part-of-that-lung"),
        pytest.param([T("What diseases are included in the picture?", "Lung Cancer, Liver Cancer"),
                      T("Where is the abnormality located?", "Lung, Liver")],
                     "Findings include lung cancer and liver cancer.", id="abnormal-places-named-by-the-findings"),
        pytest.param([T("What diseases are included in the picture?", "Pneumothorax"),
                      T("Is there abnormalities in the patient's right chest?", "Yes"),
                      T("Which part of the chest is the pneumothorax located in?", "Right"), T("What organ system is pictured?", "Chest")],
                     "Image of the chest. The pneumothorax is on the right.", id="abnormality-in-the-region-said-by-the-finding"),
        pytest.param([T("What diseases are included in the picture?", "Pleural Effusion"),
                      T("Which part of the chest is the effusion located in?", "Right")],
                     "Pleural effusion is seen on the right.", id="finding-takes-its-place"),
        pytest.param([T("Which lobe is abnormal in this image?", "Left"), T("Where is the nodule located?", "Lower Left Lung")],
                     "The nodule is in the lower left lung.", id="slake-lobe-is-the-lung"),
        pytest.param([T("Is the corticomedullary differentiation altered?", "Yes"),
                      T("What is evinced by this kidney image?", "Loss of normal corticomedullary differentiation")],
                     "The corticomedullary differentiation is altered.", id="altered-is-loss-of-normal"),
        pytest.param([T("Are there abnormalities in the contrast between cortex and medulla?", "Yes"),
                      T("Is the cortex-medulla junction altered?", "Yes")],
                     "The cortex-medulla junction is altered.", id="abnormality-in-a-junction-is-it-altered"),
    ],
)
def test_one_thing_is_said_once(turns, expected):
    text = template_summary(turns)
    assert text == expected
    assert summary_issues(text) == []


@pytest.mark.parametrize(
    "turns, expected",
    [
        pytest.param([T("Is the mass in the kidney regular or irregular in contour?", "Irregular"),
                      T("What is the shape of the kidney mass?", "infiltrative")],
                     "The mass in the kidney is irregular in contour; the kidney mass is infiltrative.", id="contour-and-growth"),
        pytest.param([T("What color does the right lung show in the picture?", "Gray"),
                      T("Which organs/organ is part of the respiratory system in this image?", "Lung")],
                     "The right lung is gray; the lung is part of the respiratory system.", id="colour-and-system"),
        pytest.param([T("Where is the lesion?", "Left occipital lobe"), T("Which vascular territory is the lesion in?", "Left PCA")],
                     "The lesion is in the left occipital lobe; the lesion is in the left PCA.", id="lobe-and-vascular-territory"),
        pytest.param([T("Where is the lesion?", "Right lung"), T("Which lobe is the lesion in?", "Right temporal lobe")],
                     "The lesion is in the right lung; the lesion is in the right temporal lobe.", id="a-brain-lobe-is-not-in-the-lung"),
        pytest.param([T("Where is the effusion?", "Left lung"), T("Can effusion be observed on the lower right lung?", "Yes")],
                     "The effusion is in the left lung; effusion can be observed on the lower right lung.", id="other-side"),
        pytest.param([T("Are the lungs normal?", "Yes"), T("Is the right lung normal?", "Yes")],
                     "The lungs and the right lung are normal.", id="normal-general-not-dropped-for-a-side"),
        pytest.param([T("Is there a fracture?", "No"), T("Is there a fracture of the left rib?", "No")],
                     "No fracture or fracture of the left rib is seen.", id="negative-general-not-dropped"),
        pytest.param([T("Are there other abnormalities besides the cyst in the kidney?", "Yes"), T("Where is the cyst?", "Left kidney")],
                     "Other abnormalities besides the cyst in the kidney is seen; the cyst is in the left kidney.",
                     id="other-abnormalities-are-more"),
        pytest.param([T("What diseases are included in the picture?", "Brain Non-enhancing Tumor"),
                      T("Where is the brain enhancing tumor located?", "Left Lobe")],
                     "Brain non-enhancing tumor is seen; the brain enhancing tumor is in the left lobe.",
                     id="non-enhancing-is-not-enhancing"),
        pytest.param([T("Is the gallbladder wall thickened?", "Yes"), T("Is the gallbladder wall altered?", "No")],
                     "The gallbladder wall is thickened; the gallbladder wall is not altered.", id="polarity-never-merges"),
    ],
)
def test_different_facts_are_both_kept(turns, expected):
    assert template_summary(turns) == expected


def test_polarity_of_abnormal_words_is_consistent():
    """'no abnormality in X' = 'X is not abnormal' = 'X is normal'; 'altered' and 'loss of normal' = 'abnormal'."""
    normal = stems("the spleen is normal")
    assert stems("no abnormalities of the spleen") == normal
    assert stems("the spleen is not abnormal") == normal
    assert stems("the spleen is altered") == stems("the spleen is abnormal") == stems("loss of normal spleen")
    assert stems("the right kidney is larger than the left")[0] == stems("the right kidney is enlarged")[0]
    assert stems("nodules in both lungs")[0] >= {"left", "right"}
